package natsvc

// Stopping reports whether Stop has begun.
func (a *Async) Stopping() bool { return a.stopping.Load() }
