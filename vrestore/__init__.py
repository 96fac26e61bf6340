"""video-restoration-gan: one import name, `vrestore`.

    vrestore.cli       the commands (`vrestore`, `make-shards`, `python -m vrestore`): the top floor
    vrestore.trainer   the training run        (repository folder trainer/)
    vrestore.pipeline  data, media, inference  (repository folder pipeline/)
    vrestore.models    the networks            (repository folder models/)

Imports run one way: cli -> trainer -> pipeline -> models.
"""
