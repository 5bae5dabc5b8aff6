"""Process helpers the pipeline needs at run time too: a PostgreSQL cluster, Redis or Prometheus server on a free port."""
