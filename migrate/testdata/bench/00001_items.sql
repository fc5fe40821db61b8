-- +goose Up
CREATE TABLE items (id bigserial PRIMARY KEY, tenant_id text NOT NULL, qty int NOT NULL);
INSERT INTO items (tenant_id, qty) SELECT current_setting('app.tenant_id'), g FROM generate_series(1, 500) g;

-- +goose Down
DROP TABLE items;
