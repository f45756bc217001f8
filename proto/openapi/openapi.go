// Package openapi embeds the OpenAPI (Swagger 2.0) document of Herald's admin
// API, generated from the .proto files by proto/generate.sh.
package openapi

import _ "embed"

// Admin is the OpenAPI document of the herald.admin.v1 services, as JSON.
//
//go:embed admin.swagger.json
var Admin []byte
