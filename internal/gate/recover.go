package gate

import (
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
)

// Recover answers a request whose handler panicked with a bare 500 and logs one error
// record: the panic and where it happened, no stack trace and nothing of the request but
// its method and path. http.ErrAbortHandler passes through (net/http ends the connection
// quietly for it).
func Recover(h http.Handler, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			logger.Error("request handler panicked", "panic", fmt.Sprint(v), "at", panicSite(),
				"method", r.Method, "path", r.URL.Path)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintln(w, "internal error")
		}()
		h.ServeHTTP(w, r)
	})
}

// panicSite is the function and line that panicked: the first frame below the runtime's
// panic machinery.
func panicSite() string {
	pcs := make([]uintptr, 16)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			return fmt.Sprintf("%s:%d", f.Function, f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}
