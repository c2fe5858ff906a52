package tinylm

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// apiError is an error with the HTTP status and OpenAI error type it is
// reported with.
type apiError struct {
	status int
	typ    string
	param  string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, typ: "BadRequestError", param: param, msg: fmt.Sprintf(format, args...)}
}

func notFound(param, format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: param, msg: fmt.Sprintf(format, args...)}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: "encode response: " + err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// writeError writes err as an OpenAI error object; errors that are not
// *apiError are internal (500).
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: http.StatusInternalServerError, typ: "InternalServerError", msg: err.Error()}
	}
	info := errorInfo{Message: ae.msg, Type: ae.typ, Code: ae.status}
	if ae.param != "" {
		p := ae.param
		info.Param = &p
	}
	body, _ := json.Marshal(errorResponse{Error: info})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(ae.status)
	w.Write(body)
}

// decodeBody decodes the JSON request body into v; errors are 400s (413 for
// a body over the limit) that say what is wrong.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &apiError{status: http.StatusRequestEntityTooLarge, typ: "BadRequestError", msg: fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return badRequest(te.Field, "invalid JSON body: field %q must be %s, not a JSON %s", te.Field, te.Type.String(), te.Value)
		}
		return badRequest("", "invalid JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("", "invalid JSON body: data after the JSON object")
	}
	return nil
}
