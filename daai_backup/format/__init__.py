"""The bytes of a backup file: DBK1 encryption (:mod:`.dbk1`), the master keys and the
per-tenant keys derived from them (:mod:`.keys`), and gzip (:mod:`.compression`).
``docs/format.md`` specifies them."""
