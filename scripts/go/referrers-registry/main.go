// referrers-registry: go-containerregistry's registry (pkg/registry) with the OCI 1.1 Referrers API
// switched on, behind HTTP Basic auth, for Ferry's interop tests. `crane registry serve` serves the same
// registry but without the Referrers API and without auth; zot (the first choice) is not served by the
// Go module proxy this project can reach.
//
// What this implementation does that distribution does not: GET /v2/<name>/referrers/<digest>
// answers from the manifests' `subject` fields; no cross-repository mount (a mount request starts a
// plain upload session); uploads are kept in memory until the final PUT.
//
//	referrers-registry -addr 127.0.0.1:5000 -disk /tmp/blobs -user ferry:s3cret
package main

import (
	"crypto/subtle"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on (port 0: a free port, printed on stdout)")
	disk := flag.String("disk", "", "directory for blobs (default: memory)")
	user := flag.String("user", "", "user:password required as HTTP Basic credentials (default: no auth)")
	quiet := flag.Bool("quiet", false, "do not log each request")
	flag.Parse()

	opts := []registry.Option{registry.WithReferrersSupport(true)}
	if *disk != "" {
		if err := os.MkdirAll(*disk, 0o755); err != nil {
			log.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*disk)))
	}
	if *quiet {
		opts = append(opts, registry.Logger(log.New(discard{}, "", 0)))
	}
	handler := registry.New(opts...)
	if *user != "" {
		name, password, ok := strings.Cut(*user, ":")
		if !ok {
			log.Fatal("-user must be user:password")
		}
		handler = basicAuth(handler, name, password)
	}

	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// The test helper reads this line to learn the port.
	os.Stdout.WriteString("listening on " + listener.Addr().String() + "\n")
	log.Fatal(http.Serve(listener, handler))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// basicAuth answers 401 with a Basic challenge, as distribution's htpasswd auth does, unless the
// request carries the configured credentials.
func basicAuth(next http.Handler, name, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(name)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="referrers-registry"`)
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}
