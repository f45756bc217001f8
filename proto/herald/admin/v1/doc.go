// Package adminv1 is the generated Go code of herald.admin.v1, Herald's
// administration API: messages, gRPC client and server, and the grpc-gateway
// handlers that serve it as JSON over HTTP. Regenerate with
// `bash proto/generate.sh`; the .proto files are the source.
package adminv1
