// Package reporting is the console's history and reporting store: a
// PostgreSQL read model of every alert (its summary and its events), fed
// from the event log by a projector, and the queries the console's safety
// lead and fail-safe pages run on it. Redis (acknowledgement's projection)
// keeps open alerts; this store keeps every alert for as long as the
// database does.
//
// It holds no patient data and no free text people typed: tenant, alert id,
// reference, accession, category, state, the times (raised, routed,
// acknowledged, actioned, fail-safe queued, closed, cancelled), the
// category's clocks, breaches, decline reasons (fixed words), quarantine,
// policy version, team and referrer ids, and per event its type, time, the
// ids of the people contacted, the acting member of staff (id, display name,
// role, identity provider: the governance timeline's "who") and the
// delivery state. The
// console fetches the patient and report live through acknowledgement's
// GetAlert, after sign-in.
//
// # Using it (the console)
//
//	store, err := reporting.Open(ctx, postgresURL, clock) // connects and migrates (goose, embedded SQL)
//	defer store.Close()
//	go reporting.NewProjector(store, reporting.ProjectorConfig{Log: logCfg, Reference: refKey.Ref}).Run(ctx)
//
//	page, err := store.Search(ctx, reporting.SearchQuery{Tenant: "RXF", Accession: "ACC1"})   // or Reference, From/To; paged by Cursor
//	sum, err := store.Alert(ctx, "RXF", alertID)                                              // one summary; ErrNotFound
//	events, err := store.Timeline(ctx, "RXF", alertID)                                        // the governance timeline, log order
//	c, err := store.Compliance(ctx, "RXF", from, to)   // Overall, ByCategory, ByTeam, ByReferrer, Weekly: Figures
//	r, err := store.RCRReport(ctx, "RXF", from, to)    // per category numerator/denominator; r.WriteCSV(w)
//	gen, err := store.Rebuild(ctx)                     // heraldctl rebuild reporting: empty, replay the log
//	drift, err := store.Reconcile(ctx, "RXF", from, to) // rollup rows that differ from the alerts' rows
//	err = store.RepairRollups(ctx, "RXF", from, to)     // rewrite those weeks' rollups from the alerts
//	go store.ReconcileEvery(ctx, time.Hour, 8*7*24*time.Hour, onDrift) // both, periodically
//
// Every query takes the trust (tenant) and returns nothing of another
// trust: the caller passes the trust the signed-in person may see. Errors
// wrap fault.ErrUnavailable when the database cannot be reached, and
// fault.Invalid (naming the field) for a bad query.
//
// # Figures
//
// See Figures for the definitions. In short: an alert is due once it is
// acknowledged or its acknowledge-by deadline has passed (at the time of
// the query, the store's clock); in time when acknowledged at or before
// that deadline (the category's target from the policy in force when it
// was routed); cancelled alerts and alerts never routed are not due. Time
// to acknowledge runs from the start of the category's clocks to the first
// acknowledgement. The figures are read from rollups (rollup.go,
// compliance.go): counts equal the row-level counts; median and p90 come
// from histograms, within 0.5 s + 0.8% of PostgreSQL's percentile_cont
// over the rows (exact when a rank is alone in its bucket). The RCR audit (RCRReport) is, per category, numerator = in time and
// denominator = due, with pending, late and unacknowledged beside them.
//
// # The projector
//
// Projector consumes the event log in its own consumer group
// (herald-reporting-g<generation>). Records are handled in lanes (256 per
// partition) whose events share batches: one transaction stores the events
// (INSERT ... ON CONFLICT (event_id) DO NOTHING) and recomputes, with Fold,
// the summary of each alert that gained an event from all of its stored
// events, and moves the compliance rollups by the difference between each
// such alert's old and new summary (two pipelined round trips). A record's offset is committed only after its batch committed,
// so a crash between the two redelivers events that are already stored:
// nothing changes. Rebuild empties both tables and increments the
// generation; projectors notice, refuse batches of the old generation, and
// replay the log from its start under the new group.
package reporting
