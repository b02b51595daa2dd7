"""Training methods: one file per method, each mapping our config onto a TRL trainer."""
