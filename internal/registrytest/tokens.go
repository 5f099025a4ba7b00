package registrytest

import "slices"

// IssuedTokens returns the bearer tokens the token endpoint has handed out
// and not revoked, sorted, so that a test can prove a client never leaks
// them (into logs, errors or responses).
func (r *Registry) IssuedTokens() []string {
	return r.tokens.issued()
}

func (s *tokenStore) issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.tokens))
	for t := range s.tokens {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}
