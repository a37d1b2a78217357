-- Sign-in through a ministry's own OpenID Connect provider (web.oidc).

-- One row per sign-in started at the provider: what the callback must find again. Known
-- by the SHA-256 of its `state`; bound to the browser that started it by the SHA-256 of a
-- cookie only that browser holds. Used once (the callback deletes it as it reads it),
-- good for 10 minutes; rows an hour past their expiry are deleted at the next start.
CREATE TABLE oidc_starts (
    state_hash    TEXT PRIMARY KEY,
    browser_hash  TEXT NOT NULL,
    -- PKCE (RFC 7636): the verifier whose challenge went to the provider.
    pkce_verifier TEXT NOT NULL,
    -- Must come back inside the ID token.
    nonce         TEXT NOT NULL,
    -- The page language at the start ('ar' or 'en'): the callback arrives from another
    -- site, so without the language cookie.
    lang          TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX oidc_starts_expiry ON oidc_starts (expires_at);

-- A person who signed in through a provider is known by the provider's issuer and subject
-- (`iss`, `sub`) from then on, whatever login the provider names later.
ALTER TABLE persons ADD COLUMN oidc_issuer TEXT;
ALTER TABLE persons ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX persons_oidc ON persons (oidc_issuer, oidc_subject)
    WHERE oidc_subject IS NOT NULL;
