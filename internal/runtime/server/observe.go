package server

import "time"

// observer records metrics; a zero observer records nothing.
type observer struct{}

func (o observer) refused(transport, reason string)                                  {}
func (o observer) rateLimited(c caller, method string)                               {}
func (o observer) request(transport, method, outcome string, latency time.Duration) {}
func (o observer) dropped()                                                          {}
func (o observer) sessionOpened(transport string)                                    {}
func (o observer) sessionClosed(transport string)                                    {}

// audit writes the audit record of a tool call.
func (s *Server) audit(sess *session, p *pendingCall, outcome string, bytesOut int) {}
