"""The training data on disk: make-shards (videos -> WebDataset shards with DALI indexes; locally
or as Ray tasks: make_shards_ray), the shard writer, manifest.json, reading a shard folder back
(shard_set), videos held out for validation (holdout), and the sample videos. Imports media/,
cluster/, degrade/ (make-shards --preset real) and the root modules."""
