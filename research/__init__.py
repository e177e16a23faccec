"""Research code kept beside the product: experiments that train and measure models, not part of `mvideo_core`."""
