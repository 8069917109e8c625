-- Deployments: an approved version shipped to device groups through a staged rollout, and what
-- devices report running. Which devices a stage covers is computed (edgeplane_core::fl::rollout),
-- never stored, so promotion is one row update however large the fleet.
CREATE TABLE fl_deployments (
  id            TEXT PRIMARY KEY,
  org_id        TEXT NOT NULL REFERENCES orgs(id),
  model_id      TEXT NOT NULL REFERENCES fl_models(id),
  version_id    TEXT NOT NULL REFERENCES fl_model_versions(id),
  -- The version the model's newest earlier deployment delivered, kept for the record.
  previous_version_id TEXT REFERENCES fl_model_versions(id),
  -- JSON list of strictly increasing percentages ending at 100.
  stages        TEXT NOT NULL,
  stage_index   INTEGER NOT NULL,
  state         TEXT NOT NULL CHECK (state IN ('active', 'paused', 'completed', 'rolled_back')),
  created_by    TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE INDEX fl_deployments_by_org_model ON fl_deployments (org_id, model_id, created_at_ms);

CREATE TABLE fl_deployment_groups (
  deployment_id TEXT NOT NULL REFERENCES fl_deployments(id),
  group_id      TEXT NOT NULL REFERENCES fl_device_groups(id),
  PRIMARY KEY (deployment_id, group_id)
);
CREATE INDEX fl_deployment_groups_by_group ON fl_deployment_groups (group_id);

-- What a device last reported about a model (observed state, or a sync's inventory):
-- bookkeeping like a heartbeat, not audited.
CREATE TABLE fl_device_models (
  org_id            TEXT NOT NULL REFERENCES orgs(id),
  device_id         TEXT NOT NULL REFERENCES fl_devices(id),
  model_id          TEXT NOT NULL,
  installed_version TEXT,
  active_version    TEXT,
  status            TEXT NOT NULL CHECK (status IN ('pending', 'downloading', 'installed', 'active', 'failed')),
  last_error        TEXT,
  reported_at_ms    INTEGER NOT NULL,
  PRIMARY KEY (device_id, model_id)
);
CREATE INDEX fl_device_models_by_model ON fl_device_models (org_id, model_id);
