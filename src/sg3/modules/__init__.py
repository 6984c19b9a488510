"""Networks: StyleGAN3/StyleGAN2 generators, discriminator and their building blocks."""
