-- +goose Up
CREATE TABLE projects (
    id         bigserial PRIMARY KEY,
    tenant_id  text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
CREATE TABLE notes (
    id         bigserial PRIMARY KEY,
    tenant_id  text NOT NULL,
    project_id bigint NOT NULL REFERENCES projects ON DELETE CASCADE,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notes_project ON notes (project_id);

-- +goose Down
DROP TABLE notes;
DROP TABLE projects;
