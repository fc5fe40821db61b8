-- +goose Up
CREATE TABLE items (id bigserial PRIMARY KEY, tenant_id text NOT NULL, qty int NOT NULL);

-- +goose Down
DROP TABLE items;
