"""vrestore.models: the networks (networks.py) and the weights file format that describes them
(weights.py). Imports nothing else of this package."""
from vrestore.models.networks import (
    DEPTH,
    DiscriminatorConfig,
    GANLoss,
    GeneratorConfig,
    PatchDiscriminator,
    UNetGenerator,
    build_discriminator,
    build_generator,
    generator_for,
    centre_frame,
    init_weights,
    pad_to_multiple,
)

__all__ = [
    "DEPTH", "DiscriminatorConfig", "GANLoss", "GeneratorConfig", "PatchDiscriminator", "UNetGenerator",
    "build_discriminator", "build_generator", "generator_for", "centre_frame", "init_weights", "pad_to_multiple",
]
