REVOKE ALL ON SCHEMA "tenant_empty" FROM PUBLIC;
GRANT USAGE ON SCHEMA "tenant_empty" TO "app";
