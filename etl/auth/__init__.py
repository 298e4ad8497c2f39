"""Client-side authentication shared by every source.

    schemes.py   the ``Auth`` seam (apply to a request, renew after a 401), API key, bearer
    oauth2.py    the token endpoint, client credentials, rotating refresh tokens
    device.py    the device flow, for ``etl auth <source>``
    tokens.py    ``TokenSet`` (never printed) and the ``TokenStore`` seam
    sealing.py   tokens sealed at rest (Fernet), the key from ETL_SECRET_KEY or the key file

The PostgreSQL token store is ``etl.sink.tokens.PgTokenStore``.
"""
