-- Keys at rest: private_key and value hold the row's key material sealed (ChaCha20-Poly1305)
-- under a key-encryption key, named here by its id (the first 8 bytes of its SHA-256, hex).
-- NULL marks a row written in clear before this change: the service seals those in Rust at its
-- first start (one transaction), so after that start no row is NULL.
ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;
ALTER TABLE server_secrets ADD COLUMN kek_id TEXT;
