-- +goose Up
CREATE TABLE IF NOT EXISTS public.plans (name text PRIMARY KEY, projects_limit int NOT NULL);
INSERT INTO public.plans VALUES ('free', 10), ('pro', 1000) ON CONFLICT DO NOTHING;

-- +goose Down
DROP TABLE public.plans;
