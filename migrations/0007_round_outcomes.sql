-- A round can end `failed` (its average overflowed the base dtype); the reason is kept.
ALTER TABLE fl_rounds ADD COLUMN failure TEXT;
