package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	mcpv1alpha1 "github.com/mcpfleet/mcp-fleet-operator/api/v1alpha1"
	"github.com/mcpfleet/mcp-fleet-operator/internal/resources"
)

const benchNamespace = "bench"

// scenario is one cluster story; the harness plays the missing controllers it names.
type scenario struct {
	id, title   string
	certManager bool // install cert-manager's CRDs
	issue, roll bool // the harness issues Certificates / makes Deployments available
	// settled is the status every server must reach, as Ready reasons (kstatus follows).
	settledReasons []string
	settledDesc    string
}

var scenarios = []scenario{
	{
		id: "well", title: "all is well (the harness issues every Certificate and makes every Deployment available)",
		certManager: true, issue: true, roll: true,
		settledReasons: []string{"True/Serving"}, settledDesc: "kstatus Current, Ready=True",
	},
	{
		id: "podsdown", title: "no pod ever becomes ready (Certificates issued, Deployments never available)",
		certManager: true, issue: true,
		settledReasons: []string{"False/RollingOut", "False/WaitingForPods"}, settledDesc: "kstatus InProgress, Ready=False waiting for pods",
	},
	{
		id: "nocertmanager", title: "cert-manager absent (no cert-manager CRDs)",
		settledReasons: []string{"False/CertManagerNotInstalled"}, settledDesc: "kstatus Failed (Stalled), Ready=False CertManagerNotInstalled",
	},
}

func findScenario(id string) (scenario, bool) {
	for _, s := range scenarios {
		if s.id == id {
			return s, true
		}
	}
	return scenario{}, false
}

func scenarioIDs() string {
	ids := make([]string, len(scenarios))
	for i, s := range scenarios {
		ids[i] = s.id
	}
	return strings.Join(ids, ", ")
}

func numCPU() int { return runtime.NumCPU() }

// result is what one scenario measured.
type result struct {
	scenario       scenario
	children       int           // child kinds per server
	created        time.Duration // creating the N servers (harness side)
	toChildren     time.Duration // until every server had all its children
	toSettled      time.Duration // until every status was settled
	toLastWrite    time.Duration // until the manager's last write before the quiet window
	converge       writeCounts   // audit: manager writes from start to convergence
	convergeProm   float64       // the manager's rest_client_requests_total writes
	reconciles     float64
	statusChanged  int64 // status writes that changed the object
	standInWrites  int64
	quiet          writeCounts
	quietProm      float64
	quietReconcile float64
	quietStatus    statusSummary
	proc           procStats
	quietCPU       time.Duration
	loadAvg        string
}

func newScheme() *k8sruntime.Scheme {
	s := k8sruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(cmv1.AddToScheme(s))
	utilruntime.Must(mcpv1alpha1.AddToScheme(s))
	return s
}

func benchServer(i int) *mcpv1alpha1.MCPServer {
	return &mcpv1alpha1.MCPServer{
		ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: fmt.Sprintf("server-%04d", i)},
		Spec: mcpv1alpha1.MCPServerSpec{
			Image:   "ghcr.io/example/everything-server:v1.8.0",
			Command: []string{"/everything-server"},
			Origins: mcpv1alpha1.OriginsSpec{Allowed: []mcpv1alpha1.Origin{"https://app.example.com"}},
		},
	}
}

func runScenario(ctx context.Context, o options, s scenario, root, dir string, out io.Writer) (res result, retErr error) {
	res.scenario = s
	cp, err := startControlPlane(dir, o.assets, s.certManager, root)
	if err != nil {
		return res, err
	}
	defer func() { retErr = errors.Join(retErr, cp.stop()) }()

	scheme := newScheme()
	cfg := rest.CopyConfig(cp.cfg)
	cfg.QPS, cfg.Burst = 2000, 4000 // the harness must not be the bottleneck
	cfg.UserAgent = "bench-operator"
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return res, err
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		return res, fmt.Errorf("creating namespace: %w", err)
	}

	cctx, cancelCache := context.WithCancel(ctx)
	defer cancelCache()
	managed := cache.ByObject{Label: managedSelector()}
	byObject := map[client.Object]cache.ByObject{
		&corev1.ServiceAccount{}:      managed,
		&corev1.Secret{}:              managed,
		&corev1.ConfigMap{}:           managed,
		&corev1.Service{}:             managed,
		&networkingv1.NetworkPolicy{}: managed,
		&appsv1.Deployment{}:          managed,
	}
	if s.certManager {
		byObject[&cmv1.Certificate{}] = managed
	}
	hc, err := cache.New(cfg, cache.Options{
		Scheme:            scheme,
		DefaultNamespaces: map[string]cache.Config{benchNamespace: {}},
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject:          byObject,
	})
	if err != nil {
		return res, err
	}
	cacheDone := make(chan struct{})
	go func() { defer close(cacheDone); _ = hc.Start(cctx) }()
	defer func() { cancelCache(); <-cacheDone }()
	if !hc.WaitForCacheSync(cctx) {
		return res, errors.New("the harness's cache did not start")
	}

	obs := &observer{cache: hc, kinds: childKinds(s.certManager)}
	res.children = len(obs.kinds)
	if err := obs.start(cctx); err != nil {
		return res, err
	}
	stand := &standIns{cache: hc, client: c, issue: s.issue, roll: s.roll}
	if err := stand.start(cctx, 4); err != nil {
		return res, err
	}

	kubeconfig, err := cp.managerKubeconfig()
	if err != nil {
		return res, err
	}
	mgr, err := startManager(ctx, o.manager, kubeconfig, dir)
	if err != nil {
		return res, err
	}
	defer mgr.stop()
	httpc := &http.Client{Timeout: 10 * time.Second}
	audit := &auditTail{path: cp.auditPath}
	base, err := audit.read()
	if err != nil {
		return res, err
	}
	baseProm, err := scrape(httpc, mgr.metricsAddr)
	if err != nil {
		return res, err
	}

	// Create every server, then watch the cluster converge.
	t0 := time.Now()
	logf := func(format string, a ...any) {
		say(out, "  %6.1fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, a...))
	}
	if err := createServers(ctx, c, o.n, o.creators); err != nil {
		return res, err
	}
	res.created = time.Since(t0)
	logf("created %d MCPServers", o.n)

	deadline := time.Now().Add(o.phaseTimeout)
	var last statusSummary
	lastReport := time.Now()
	for res.toChildren == 0 || res.toSettled == 0 {
		if err := wait(ctx, mgr, 200*time.Millisecond); err != nil {
			return res, err
		}
		if res.toChildren == 0 {
			n, err := obs.childrenComplete(ctx, benchNamespace)
			if err != nil {
				return res, err
			}
			if n == o.n {
				res.toChildren = time.Since(t0)
				logf("every server has all %d children", res.children)
			}
		}
		if res.toSettled == 0 {
			sum, err := obs.statuses(ctx, benchNamespace)
			if err != nil {
				return res, err
			}
			last = sum
			if settled(sum, s, o.n) {
				res.toSettled = time.Since(t0)
				logf("every status settled: %s", s.settledDesc)
			}
		}
		if time.Since(lastReport) > 10*time.Second {
			lastReport = time.Now()
			logf("waiting: statuses %s", last)
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("not converged within %s: statuses %s; manager log %s", o.phaseTimeout, last, mgr.logPath)
		}
	}

	// Converged when the manager has written nothing for the settle period.
	prev, err := audit.read()
	if err != nil {
		return res, err
	}
	lastChange := time.Now()
	for time.Since(lastChange) < o.settle {
		if err := wait(ctx, mgr, 250*time.Millisecond); err != nil {
			return res, err
		}
		cur, err := audit.read()
		if err != nil {
			return res, err
		}
		if cur != prev {
			prev, lastChange = cur, time.Now()
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("the manager kept writing for %s after every status settled: %s", o.phaseTimeout, cur.sub(base))
		}
	}
	prom, err := scrape(httpc, mgr.metricsAddr)
	if err != nil {
		return res, err
	}
	if lw := audit.lastWrite(); lw.After(t0) {
		res.toLastWrite = lw.Sub(t0)
	}
	res.converge = prev.sub(base)
	res.convergeProm = prom.Writes - baseProm.Writes
	res.reconciles = prom.Reconciles - baseProm.Reconciles
	res.statusChanged = obs.statusChanges.Load()
	res.standInWrites = stand.writes.Load()
	logf("converged: manager wrote %s", res.converge)

	// The quiet window: nothing changes; every write now is amplification.
	procBefore, err := readProc(mgr.pid())
	if err != nil {
		return res, err
	}
	if o.quiet > 0 {
		logf("quiet window of %s", o.quiet)
		if err := wait(ctx, mgr, o.quiet); err != nil {
			return res, err
		}
	}
	after, err := audit.read()
	if err != nil {
		return res, err
	}
	promAfter, err := scrape(httpc, mgr.metricsAddr)
	if err != nil {
		return res, err
	}
	res.quiet = after.sub(prev)
	res.quietProm = promAfter.Writes - prom.Writes
	res.quietReconcile = promAfter.Reconciles - prom.Reconciles
	if res.quietStatus, err = obs.statuses(ctx, benchNamespace); err != nil {
		return res, err
	}
	if res.proc, err = readProc(mgr.pid()); err != nil {
		return res, err
	}
	res.quietCPU = res.proc.CPU - procBefore.CPU
	res.loadAvg = loadAverage()
	logf("quiet window over: manager wrote %s", res.quiet)
	return res, nil
}

func settled(sum statusSummary, s scenario, n int) bool {
	got := 0
	for _, r := range s.settledReasons {
		got += sum.ready[r]
	}
	return got == n
}

func (s statusSummary) String() string {
	var b strings.Builder
	for _, st := range []status.Status{status.CurrentStatus, status.InProgressStatus, status.FailedStatus, status.UnknownStatus, status.TerminatingStatus, status.NotFoundStatus} {
		if s.kstatus[st] > 0 {
			say(&b, "%s=%d ", st, s.kstatus[st])
		}
	}
	b.WriteString("| Ready")
	for r, n := range s.ready {
		say(&b, " %s=%d", r, n)
	}
	return b.String()
}

// wait sleeps for d unless the harness is interrupted or the manager died.
func wait(ctx context.Context, mgr *managerProcess, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-mgr.done:
		return fmt.Errorf("the manager exited; log:\n%s", tailFile(mgr.logPath, 3000))
	case <-time.After(d):
		return nil
	}
}

func createServers(ctx context.Context, c client.Client, n, workers int) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := c.Create(cctx, benchServer(i))
				cancel()
				if err != nil {
					errs <- fmt.Errorf("creating server %d: %w", i, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
		return err
	default:
		return nil
	}
}

// managedSelector selects what the manager made, as the manager's own cache does.
func managedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{resources.LabelManagedBy: resources.ManagedBy})
}
