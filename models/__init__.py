"""The networks: pix2pix U-Net generator and PatchGAN critic. Imports nothing else of this project."""
from models.networks import (
    DiscriminatorConfig,
    GANLoss,
    GeneratorConfig,
    PatchDiscriminator,
    UNetGenerator,
    build_discriminator,
    build_generator,
    centre_frame,
    init_weights,
    pad_to_multiple,
)

__all__ = [
    "DiscriminatorConfig", "GANLoss", "GeneratorConfig", "PatchDiscriminator", "UNetGenerator",
    "build_discriminator", "build_generator", "centre_frame", "init_weights", "pad_to_multiple",
]
