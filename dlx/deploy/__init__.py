"""A trained run's model, out of dlx: exported to other runtimes and checked in each
(`dlx.deploy.export`), and served over HTTP (`dlx.deploy.serve`)."""
