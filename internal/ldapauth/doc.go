// Package ldapauth checks users' passwords against an LDAP directory or
// Active Directory and tells which groups they belong to: it searches the
// user's entry (as a service account, or anonymously), binds as that entry
// with the password, and reads the groups from the entry's memberOf
// attribute or from a group search. One connection per login, over
// ldaps:// or StartTLS when configured; it remembers nothing, so callers
// cache answers as they see fit (package mirror does, with keyed hashes).
package ldapauth
