-- +goose Up
CREATE TABLE IF NOT EXISTS public.migrate_test_plans (name text PRIMARY KEY, price int NOT NULL);

-- +goose Down
DROP TABLE public.migrate_test_plans;
