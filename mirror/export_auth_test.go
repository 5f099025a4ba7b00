package mirror

// SetHtpasswdCompare replaces the bcrypt comparison of h, so that tests can
// count the password checks and see which hash each one compares. Call it
// before h serves.
func SetHtpasswdCompare(h *Htpasswd, compare func(hash, password []byte) error) { h.compare = compare }
