-- Organization access administration: invitations (members, API keys and the audit log use the
-- foundation's tables).

-- An invitation token is stored only as SHA-256; it is accepted once, by the signed-in user
-- whose email matches, before it expires.
CREATE TABLE invitations (
  id             TEXT PRIMARY KEY,
  org_id         TEXT NOT NULL REFERENCES orgs(id),
  email          TEXT NOT NULL,
  role           TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  token_hash     TEXT NOT NULL UNIQUE,
  invited_by     TEXT NOT NULL,
  created_at_ms  INTEGER NOT NULL,
  expires_at_ms  INTEGER NOT NULL,
  accepted_at_ms INTEGER,
  accepted_by    TEXT,
  revoked_at_ms  INTEGER
);
CREATE INDEX invitations_by_org ON invitations (org_id, created_at_ms);
