"""Sources: a job's ``source`` spec in, a streaming DataFrame out. One folder per kind: its
``__init__`` declares the kind (spec, what it can do; no Spark), the modules beside it read.
``read.read_stream`` / ``read.read_raw_stream`` read a job's source by its kind."""
