"""sg3: StyleGAN3 training application."""
