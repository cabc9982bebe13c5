// Package mediatype reads the media type of a Content-Type header.
package mediatype

import "mime"

// Of returns the lower-case media type of a Content-Type value without its parameters, as
// mime.ParseMediaType does ("" when there is none; a malformed parameter is ignored). The two types MCP uses,
// sent bare, are returned as they are: parsing them allocated a parameter map on every
// request and every upstream answer.
func Of(contentType string) string {
	switch contentType {
	case "application/json", "text/event-stream":
		return contentType
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt
}
