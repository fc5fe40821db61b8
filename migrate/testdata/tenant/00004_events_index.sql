-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY events_at ON events (at);

-- +goose Down
DROP INDEX CONCURRENTLY events_at;
