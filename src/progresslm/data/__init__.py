"""Users' own robot data: episodes from LeRobot datasets, video or frame folders and robomimic HDF5 files
(`data.episodes`), turned into Progress-Bench-style samples (`data.build`) or exported as Hugging Face datasets
(`data.hf`)."""
