"""regen: derived images kept in step with their sources, on Kafka and Faust.

The project's top-level folders are installed as this package's
subpackages (see ``[tool.setuptools.package-dir]`` in pyproject.toml):
``regen.schemas`` (event contracts), ``regen.streams`` (the Kafka side),
``regen.agents`` (the workers' agents), ``regen.imaging`` (pure image work),
``regen.projections`` (folds and queries) and ``regen.cli`` (the command).
"""
