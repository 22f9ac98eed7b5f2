"""Request and response bodies of the API, one module per resource family. They never carry a
password hash, code hash or TOTP secret: responses are built field by field from rows."""
