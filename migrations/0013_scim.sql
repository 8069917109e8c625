-- SCIM 2.0 provisioning (issue 14): an org's IdP manages its people and groups at /scim/v2.
--
-- A SCIM user is an account (users, by email) as one org's IdP sees it: its userName,
-- externalId and names belong to the org, so they live here and never in users. active = 0 keeps
-- the resource (an IdP re-activates by PATCH) while the membership is gone.
CREATE TABLE scim_users (
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  user_id       TEXT NOT NULL REFERENCES users(id),
  user_name     TEXT NOT NULL,
  external_id   TEXT,
  display_name  TEXT,
  given_name    TEXT,
  family_name   TEXT,
  active        INTEGER NOT NULL CHECK (active IN (0, 1)),
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL,
  PRIMARY KEY (org_id, user_id)
);
-- userName is unique per org, without regard to case (RFC 7643: caseExact false).
CREATE UNIQUE INDEX scim_users_by_name ON scim_users (org_id, user_name COLLATE NOCASE);

CREATE TABLE scim_groups (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  display_name  TEXT NOT NULL,
  external_id   TEXT,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX scim_groups_by_name ON scim_groups (org_id, display_name);

-- Members carry their org so every write is an OrgBatch write (the org bound in each statement).
CREATE TABLE scim_group_members (
  org_id   TEXT NOT NULL REFERENCES orgs(id),
  group_id TEXT NOT NULL REFERENCES scim_groups(id),
  user_id  TEXT NOT NULL REFERENCES users(id),
  PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_group_members_by_user ON scim_group_members (org_id, user_id);

-- The org's mapping from an IdP group (by displayName) to a role; never owner.
CREATE TABLE scim_group_roles (
  org_id     TEXT NOT NULL REFERENCES orgs(id),
  group_name TEXT NOT NULL,
  role       TEXT NOT NULL CHECK (role IN ('admin', 'member')),
  PRIMARY KEY (org_id, group_name)
);
