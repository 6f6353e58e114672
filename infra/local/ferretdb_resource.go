// Replaces internal/util/resource/resource.go in the local FerretDB build (see
// infra/local/ferretdb.py and docs/decisions.md, "FerretDB build").
//
// Upstream, Track adds every iterator, query result and connection to a pprof profile
// (which records the caller's stack) and sets a finalizer on it, so that an object
// never released shows up in a profile or panics when collected. That leak check
// costs FerretDB a sixth of its CPU on every read here. This build keeps the package's
// API and checks nothing.
package resource

// Token is the field a tracked object carries (a pointer, so that each is distinct).
type Token byte

// NewToken returns a token for a new object.
func NewToken() *Token { return new(Token) }

// Track records nothing in this build.
func Track(obj any, token *Token) {}

// Untrack records nothing in this build.
func Untrack(obj any, token *Token) {}
