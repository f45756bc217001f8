package tenantauth

// Tracked returns how many sources and keys a's failure limiter holds.
func Tracked(a *Authenticator) int { return a.failures.len() }
