-- +goose Up
ALTER TABLE items ADD COLUMN note text NOT NULL DEFAULT '';
CREATE INDEX items_qty ON items (qty);

-- +goose Down
DROP INDEX items_qty;
ALTER TABLE items DROP COLUMN note;
