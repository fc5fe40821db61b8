-- +goose Up
CREATE TABLE events (id bigserial PRIMARY KEY, tenant_id text NOT NULL, at timestamptz NOT NULL DEFAULT now(), body text);

-- +goose Down
DROP TABLE events;
