// Package notes holds the ent client generated from ./schema, for the
// enttenant test. Regenerate with go generate ./... in contrib.
package notes

//go:generate go run -mod=mod entgo.io/ent/cmd/ent generate --target ./ent ./schema
