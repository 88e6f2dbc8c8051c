class SchemaError(ValueError):
    """An event body that does not match its contract. The message names the
    field and what was expected."""
