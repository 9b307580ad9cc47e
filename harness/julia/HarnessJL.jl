# Julia side of harness's Julia backend: forward solves, adjoint gradients and forward
# sensitivities of the Neural ODE, for dynamics defined in Python (route "python_vjp" /
# "finite_difference") or re-implemented here (route "native").
#
# Loaded once per process by harness/julia/runtime.py. Every name that Python passes in
# (solver, sensitivity algorithm) has already been checked against the whitelist in
# harness/julia/names.py; here it only selects one of the fixed constructors below.
#
# State layout (the one adapter with Python's conventions): the flat state is harness's
# feature-major vector y = zᵀ.reshape(-1), so as a Julia vector `reshape(u, B, N)` is the
# batch z (row b = sample b). θ is harness's flat parameter vector unchanged.

module HarnessJL

using ADTypes: AutoFiniteDiff, AutoForwardDiff
using OrdinaryDiffEqBDF: FBDF, QNDF
using OrdinaryDiffEqFIRK: RadauIIA5
using OrdinaryDiffEqLowOrderRK: BS3, DP5
using OrdinaryDiffEqRosenbrock: Rodas5P, Rosenbrock23
using OrdinaryDiffEqSDIRK: KenCarp4, TRBDF2
using OrdinaryDiffEqTsit5: AutoTsit5, Tsit5
using OrdinaryDiffEqVerner: Vern7, Vern9
using PythonCall: Py, PyArray
using SciMLBase: ODEFunction, ODEProblem, solve, successful_retcode
using SciMLSensitivity: BacksolveAdjoint, ForwardSensitivity, GaussAdjoint,
    InterpolatingAdjoint, ODEForwardSensitivityProblem, QuadratureAdjoint, ReverseDiffAdjoint,
    ZygoteVJP, adjoint_sensitivities, extract_local_sensitivities
using Zygote: pullback

# ------------------------------------------------------------------------------ solvers

# `autodiff` is the ADType an implicit method differentiates f with: AutoFiniteDiff() for a
# Python f (ForwardDiff's Dual numbers cannot enter Python), AutoForwardDiff() for the native
# MLP. Bools are rejected by OrdinaryDiffEq v7 (`_fixup_ad(::Bool)` throws).
const SOLVERS = Dict{String, Function}(
    "Tsit5" => _ -> Tsit5(),
    "Vern7" => _ -> Vern7(),
    "Vern9" => _ -> Vern9(),
    "DP5" => _ -> DP5(),
    "BS3" => _ -> BS3(),
    "Rosenbrock23" => ad -> Rosenbrock23(autodiff = ad),
    "Rodas5P" => ad -> Rodas5P(autodiff = ad),
    "KenCarp4" => ad -> KenCarp4(autodiff = ad),
    "TRBDF2" => ad -> TRBDF2(autodiff = ad),
    "FBDF" => ad -> FBDF(autodiff = ad),
    "QNDF" => ad -> QNDF(autodiff = ad),
    "RadauIIA5" => ad -> RadauIIA5(autodiff = ad),
    "AutoTsit5(Rosenbrock23())" => ad -> AutoTsit5(Rosenbrock23(autodiff = ad)),
)

solver_names() = sort!(collect(keys(SOLVERS)))

# ------------------------------------------------------------------------------ dynamics

"""
    Dynamics

The vector field with whatever derivatives we supply, as in-place Julia functions:
`f!(du, u, θ, t)`, and optionally `vjp!(out, λ, u, θ, t)` = (∂f/∂u)ᵀλ,
`vjp_p!(out, λ, u, θ, t)` = (∂f/∂θ)ᵀλ, `jac!(J, u, θ, t)` = ∂f/∂u (n×n),
`paramjac!(pJ, u, θ, t)` = ∂f/∂θ (n×P). `native` holds the Julia MLP (route "native",
differentiated by Zygote/ForwardDiff) or `nothing` (a Python f, never differentiated by AD).
"""
struct Dynamics{F, V, VP, J, PJ, M}
    f!::F
    vjp!::V
    vjp_p!::VP
    jac!::J
    paramjac!::PJ
    native::M
end

# Python callbacks receive plain Vector{Float64}s (zero-copy numpy views on the Python side).
# Solvers sometimes hand us views (forward sensitivities, Backsolve's augmented state); those
# are copied. Anything that is not Float64 (e.g. a ForwardDiff Dual that slipped through a
# misconfiguration) fails here loudly instead of reaching Python.
plain(x::Array{Float64}) = x
plain(x::AbstractArray) = convert(Array{Float64}, x)

# A Python callback returns a fresh float64 numpy array; PyArray wraps it without a copy
# (respecting its strides, so matrices keep their logical indices) and `.=` copies it into
# Julia-owned memory before Python can reuse or free it.
function from_python!(out, r::Py)
    out .= PyArray{Float64}(r; copy = false)
    return nothing
end

python_rhs(g::Py) = (du, u, p, t) -> from_python!(du, g(plain(u), plain(p), t))
python_vjp(g::Py) = (out, λ, u, p, t) -> from_python!(out, g(plain(λ), plain(u), plain(p), t))
python_jac(g::Py) = (J, u, p, t) -> from_python!(J, g(plain(u), plain(p), t))

python_vjp(::Nothing) = nothing
python_jac(::Nothing) = nothing

"""
    python_dynamics(rhs, vjp, vjp_p, jac, paramjac) -> Dynamics

Wrap Python callables (any of the derivatives may be `nothing`):
`rhs(u, θ, t) -> (n,)`, `vjp(λ, u, θ, t) -> (n,)`, `vjp_p(λ, u, θ, t) -> (P,)`,
`jac(u, θ, t) -> (n, n)`, `paramjac(u, θ, t) -> (n, P)`.
"""
function python_dynamics(rhs::Py, vjp, vjp_p, jac, paramjac)
    return Dynamics(
        python_rhs(rhs), python_vjp(vjp), python_vjp(vjp_p), python_jac(jac),
        python_jac(paramjac), nothing
    )
end

# ------------------------------------------------------------------------------ native MLP

sigmoid(x) = (1 + tanh(x / 2)) / 2                  # overflow-free, as harness.model
softplus(x) = max(x, zero(x)) + log1p(exp(-abs(x)))  # = log(1 + eˣ), as np.logaddexp(0, x)

# The keys are harness.model.ACTIVATIONS' (a test keeps the two in step). `identity` makes f
# linear in z: harness's closed-form case.
const ACTIVATIONS = Dict{String, Function}(
    "tanh" => tanh, "sigmoid" => sigmoid, "softplus" => softplus, "identity" => identity
)

"""
    NativeMLP(widths, σ, decay, batch)

harness.model.MLP in Julia: f(z) = W_L σ(… σ(W₁ z + b₁) …) + b_L - Λ z on a batch of `batch`
states. θ layout as in Python: per layer W (n_out×n_in, row-major in θ), then b (n_out).
`decay` is the diagonal of Λ (empty for none).
"""
struct NativeMLP{S}
    widths::Vector{Int}
    σ::S
    decay::Vector{Float64}
    batch::Int
end

# Out-of-place and mutation-free so that Zygote can differentiate it.
function (m::NativeMLP)(u, θ, _)   # autonomous: t unused
    Z = reshape(u, m.batch, m.widths[1])   # (B, N): harness's z
    X = permutedims(Z)                     # (N, B): one column per sample
    offset = 0
    n_layers = length(m.widths) - 1
    for layer in 1:n_layers
        n_in, n_out = m.widths[layer], m.widths[layer + 1]
        # θ stores W row-major; a column-major (n_in, n_out) reshape is Wᵀ.
        W = permutedims(reshape(θ[(offset + 1):(offset + n_in * n_out)], n_in, n_out))
        offset += n_in * n_out
        b = θ[(offset + 1):(offset + n_out)]
        offset += n_out
        X = W * X .+ b
        if layer < n_layers
            X = m.σ.(X)
        end
    end
    if !isempty(m.decay)
        X = X .- m.decay .* permutedims(Z)
    end
    return vec(permutedims(X))             # back to the feature-major flat layout
end

"""
    native_dynamics(widths, activation, decay, batch) -> Dynamics

The Julia MLP; its derivatives come from Julia AD (no Python involved).
"""
function native_dynamics(widths::AbstractVector, activation::AbstractString, decay::AbstractVector, batch::Integer)
    m = NativeMLP(collect(Int, widths), ACTIVATIONS[activation], collect(Float64, decay), Int(batch))
    f! = (du, u, θ, t) -> (du .= m(u, θ, t); nothing)
    return Dynamics(f!, nothing, nothing, nothing, nothing, m)
end

"""
    native_f_and_vjp(d, u, θ, λ) -> (f, (∂f/∂u)ᵀλ, (∂f/∂θ)ᵀλ)

The native MLP and its Zygote VJPs at one point, for checking against the Python MLP.
"""
function native_f_and_vjp(d::Dynamics, u::AbstractVector, θ::AbstractVector, λ::AbstractVector)
    f, back = pullback((x, p) -> d.native(x, p, 0.0), plain(u), plain(θ))
    a_u, a_θ = back(plain(λ))
    return (f, a_u, a_θ)
end

# ------------------------------------------------------------------------------ forward solve

is_native(d::Dynamics) = d.native !== nothing

algorithm(d::Dynamics, name::AbstractString) =
    SOLVERS[name](is_native(d) ? AutoForwardDiff() : AutoFiniteDiff())

# Where even the native MLP's implicit solves must use finite-difference Jacobians, because the
# solver's ForwardDiff Jacobian would push Dual numbers into Float64-only storage:
# - forward sensitivities: the ODEForwardSensitivityFunction copies the state into Float64 buffers
#   made from u0 (SciMLSensitivity 7.112.3 src/forward_sensitivity.jl: `pf = ParamJacobianWrapper(...,
#   copy(u0))` L467, `copyto!(S.pf.u, y)` L173); upstream marks the default (ForwardDiff) KenCarp4
#   solve of such a problem `@test_broken` and tests only `autodiff = AutoFiniteDiff()`
#   (test/Core1/forward.jl L62-65, also Rodas4 L64);
# - ReverseDiffAdjoint through an implicit solver: `@test_broken` for every implicit solver whose
#   `forwarddiffs_model` is true (test/Core2/stiff_adjoints.jl L231-239; TRBDF2 in
#   test/Core2/autodiff_events.jl L79-86), tested with Rosenbrock23(autodiff = AutoFiniteDiff())
#   (test/Core1/concrete_solve_derivatives.jl L704-728). harness/julia/names.py refuses the
#   Newton-based families there before Julia starts; the Rosenbrock family comes here.
finite_difference_algorithm(name::AbstractString) = SOLVERS[name](AutoFiniteDiff())

# Only the adjoints that build their own adjoint Jacobian from the forward `jac` read a
# `jac_prototype` safely (gauss_adjoint.jl / quadrature_adjoint.jl `adjoint_jac`).
# InterpolatingAdjoint and BacksolveAdjoint copy the prototype into the adjoint problem without
# an adjoint `jac`, and OrdinaryDiffEq then treats it as a sparsity pattern; DiffEqBase's
# `promote_f` has replaced it by `similar(...)` (uninitialised memory) by then, so that pattern
# would be arbitrary. For those two we pass no prototype (dense finite-difference W matrices).
const READS_JAC_PROTOTYPE = ("GaussAdjoint", "QuadratureAdjoint")

function ode_function(d::Dynamics, n::Integer, sensealg::AbstractString)
    # The native MLP goes in out-of-place, the form ZygoteVJP is written for.
    is_native(d) && return ODEFunction{false}(d.native)
    # Only the derivatives we have are given: SciMLSensitivity uses vjp/vjp_p in preference to
    # any AD (derivative_wrappers.jl `_vecjacobian_vjp!`), and GaussAdjoint turns jac +
    # jac_prototype into the adjoint's analytic Jacobian.
    with_prototype = d.jac! !== nothing && sensealg in READS_JAC_PROTOTYPE
    return ODEFunction{true}(
        d.f!; vjp = d.vjp!, vjp_p = d.vjp_p!, jac = d.jac!,
        jac_prototype = with_prototype ? zeros(n, n) : nothing
    )
end

"""
    forward_solve(d, u0, t0, t1, θ, solver, sensealg; abstol, reltol, maxiters) -> ODESolution

A dense solve (no `saveat`: Interpolating/Quadrature/Gauss adjoints read z(t) from it).
`sensealg` is the adjoint that will read the solution ("" for none), which decides whether
the ODEFunction carries a `jac_prototype` (`READS_JAC_PROTOTYPE`). `t1 < t0` solves backwards.
"""
function forward_solve(
        d::Dynamics, u0::AbstractVector, t0::Real, t1::Real, θ::AbstractVector,
        solver::AbstractString, sensealg::AbstractString; abstol::Real, reltol::Real,
        maxiters::Integer
    )
    y0 = collect(Float64, u0)
    fun = ode_function(d, length(y0), sensealg)
    prob = ODEProblem(fun, y0, (Float64(t0), Float64(t1)), collect(Float64, θ))
    return solve(prob, algorithm(d, solver); abstol, reltol, maxiters)
end

"""
    has_jac_prototype(sol) -> Bool

Whether the solved problem's ODEFunction carries a `jac_prototype` (tests pin item 5 with it).
"""
has_jac_prototype(sol) = sol.prob.f.jac_prototype !== nothing

"""
    solve_summary(sol) -> (success, retcode, t_reached, counts)

`counts` = [nf, njacs, nw, naccept, nreject] from `sol.stats` (nw: W = I - γJ factorisations).
"""
function solve_summary(sol)
    s = sol.stats
    counts = [s.nf, s.njacs, s.nw, s.naccept, s.nreject]
    return (successful_retcode(sol), String(Symbol(sol.retcode)), Float64(sol.t[end]), counts)
end

"""States at the times `ts`, as an n×K matrix (column k = z(t_k) in the flat layout)."""
states_at(sol, ts::AbstractVector) = reduce(hcat, [sol(Float64(t)) for t in ts])

# ------------------------------------------------------------------------------ adjoints

# Python routes: autodiff=false, autojacvec=false. With vjp/vjp_p on the ODEFunction these
# are used and nothing is differentiated; without them the Jacobians come from FiniteDiff.
# Never `autojacvec=nothing` (its automatic choice tries Enzyme/ReverseDiff/Zygote on the
# Python f, swallows the errors, and can return zeros: SciMLSensitivity#334).
function sensitivity_algorithm(name::AbstractString, native::Bool, abstol::Real, reltol::Real)
    if native
        vjp = ZygoteVJP()
        name == "BacksolveAdjoint" && return BacksolveAdjoint(autojacvec = vjp)
        name == "InterpolatingAdjoint" && return InterpolatingAdjoint(autojacvec = vjp)
        name == "QuadratureAdjoint" && return QuadratureAdjoint(autojacvec = vjp; abstol, reltol)
        name == "GaussAdjoint" && return GaussAdjoint(autojacvec = vjp)
    else
        name == "BacksolveAdjoint" && return BacksolveAdjoint(autodiff = false, autojacvec = false)
        name == "InterpolatingAdjoint" && return InterpolatingAdjoint(autodiff = false, autojacvec = false)
        name == "QuadratureAdjoint" &&
            return QuadratureAdjoint(autodiff = false, autojacvec = false, abstol = abstol, reltol = reltol)
        name == "GaussAdjoint" && return GaussAdjoint(autodiff = false, autojacvec = false)
    end
    throw(ArgumentError("unknown sensitivity algorithm $(repr(name))"))
end

"""
    adjoint_gradient(sol, d, solver, sensealg, ts, G; abstol, reltol, maxiters)
        -> (dL/du0, dL/dθ, reached_start, earliest)

`G` is n×K with column k = ∂L/∂z(t_k) (flat layout), `ts` the K observation times, the last
one the end of the solve. Both gradients are plain +gradients (SciMLSensitivity's convention,
test/Core3/adjoint.jl). `reached_start` says whether the backward solve reached t0 (if not,
the gradients are partial and must not be used); `earliest` is the earliest observation time
it reached.
"""
function adjoint_gradient(
        sol, d::Dynamics, solver::AbstractString, sensealg::AbstractString,
        ts::AbstractVector, G::AbstractMatrix; abstol::Real, reltol::Real, maxiters::Integer
    )
    times, table = with_start_time(collect(Float64, ts), collect(Float64, G), sol.prob.tspan[1])
    # The adjoint solve's return code never leaves `adjoint_sensitivities`: it returns the last
    # state of the adjoint solution whatever the code (sensitivity_interface.jl, gauss_adjoint.jl
    # and quadrature_adjoint.jl `_adjoint_sensitivities`), so a solve stopped by MaxIters,
    # DtLessThanMin or Unstable would give a finite, partial gradient. The loss callback is a
    # PresetTimeCallback at every time in `times`, which now starts at t0 with a zero column:
    # it runs at t0 (index 1) only if the backward solve got there. `earliest` records the
    # earliest observation time it did reach, for the error message.
    reached_start = Ref(false)
    earliest = Ref(Float64(sol.prob.tspan[2]))
    # +∂L/∂u at t[i], added to the adjoint state there (adjoint_common.jl ReverseLossCallback).
    # The table holds the forward solution's values, also for Backsolve, as harness's
    # Python Backsolve does.
    dgdu = function (out, _, _, t, i)
        out .= view(table, :, i)
        earliest[] = min(earliest[], Float64(t))
        i == 1 && (reached_start[] = true)
        return nothing
    end
    du0, dp = adjoint_sensitivities(
        sol, algorithm(d, solver);
        t = times, dgdu_discrete = dgdu,
        sensealg = sensitivity_algorithm(sensealg, is_native(d), abstol, reltol),
        abstol, reltol, maxiters
    )
    return (collect(Float64, du0), collect(Float64, vec(dp)), reached_start[], earliest[])
end

# The observation times with t0 first (a zero loss-gradient column there), unless t0 is
# already the first one. SciMLSensitivity includes a term at t[1] == tspan[1] unless
# `no_start` (adjoint_common.jl ReverseLossCallback), so a zero column changes nothing else.
function with_start_time(ts::Vector{Float64}, G::Matrix{Float64}, t0::Float64)
    (!isempty(ts) && ts[1] == t0) && return (ts, G)
    return (vcat(t0, ts), hcat(zeros(size(G, 1)), G))
end

# ------------------------------------------------------------------------------ discretise-then-optimise

"""
    discrete_gradient(d, u0, t0, ts, θ, G, solver; abstol, reltol, maxiters)
        -> (dL/du0, dL/dθ, retcode)

Reverse mode through the solver's own steps (SciMLSensitivity's `ReverseDiffAdjoint`, the
counterpart of harness's RecursiveCheckpointAdjoint): `solve` with `sensealg = ReverseDiffAdjoint()`
inside a Zygote pullback reaches SciMLSensitivity's `_concrete_solve_adjoint(prob, alg,
sensealg::ReverseDiffAdjoint, u0, p, originator, ...)` (concrete_solve.jl), which tapes the whole
solve with ReverseDiff; the pullback of the states at `ts` with G (n×K, column k = ∂L/∂z(t_k))
is the gradient of the discrete loss. ReverseDiff traces f, so only the native route's Julia MLP
(out of place) can be differentiated; the Python routes are refused in names.py. `saveat = ts`
without `tstops`: the states at `ts` are read from the solver's interpolant and the tape
differentiates it, as harness's RecursiveCheckpointAdjoint does with DP5 and BS3 (upstream tests
ReverseDiffAdjoint so: `saveat = 0.1`, no tstops, test/Core1/concrete_solve_derivatives.jl).
UNVERIFIED: written against upstream source; it has not run on a machine with Julia.
"""
function discrete_gradient(
        d::Dynamics, u0::AbstractVector, t0::Real, ts::AbstractVector, θ::AbstractVector,
        G::AbstractMatrix, solver::AbstractString; abstol::Real, reltol::Real, maxiters::Integer
    )
    is_native(d) || throw(ArgumentError("ReverseDiffAdjoint needs the native Julia MLP (route native)"))
    times = collect(Float64, ts)
    y0 = collect(Float64, u0)
    prob = ODEProblem(ode_function(d, length(y0), "ReverseDiffAdjoint"), y0, (Float64(t0), times[end]),
        collect(Float64, θ))
    retcode = Ref{Any}(nothing)
    states = function (u, p)
        sol = solve(prob, finite_difference_algorithm(solver); u0 = u, p = p, saveat = times,
            abstol, reltol, maxiters, sensealg = ReverseDiffAdjoint())
        retcode[] = sol.retcode
        return reduce(hcat, sol.u)  # n×K
    end
    _, back = pullback(states, y0, collect(Float64, θ))
    du0, dp = back(collect(Float64, G))
    return (collect(Float64, du0), collect(Float64, vec(dp)), string(retcode[]))
end

# ------------------------------------------------------------------------------ forward sensitivities

# ForwardSensitivity differentiates only with respect to p. To get dL/dz0 as well, solve for
# w = z - z0 with parameters q = [θ; z0]: dw/dt = f(z0 + w, θ), w(0) = 0, so ∂z/∂z0 = I + ∂w/∂z0.
struct Shifted{F, J, PJ}
    f!::F
    jac!::J
    paramjac!::PJ
    n_params::Int
end

split_q(s::Shifted, w, q) = (view(q, (s.n_params + 1):length(q)) .+ w, view(q, 1:s.n_params))

function (s::Shifted)(dw, w, q, t)
    z, θ = split_q(s, w, q)
    return s.f!(dw, z, θ, t)
end

shifted_jac(::Shifted{F, Nothing}) where {F} = nothing
function shifted_jac(s::Shifted)
    return function (J, w, q, t)
        z, θ = split_q(s, w, q)
        return s.jac!(J, z, θ, t)
    end
end

shifted_paramjac(::Shifted{F, J, Nothing}) where {F, J} = nothing
function shifted_paramjac(s::Shifted)
    return function (pJ, w, q, t)
        z, θ = split_q(s, w, q)
        s.paramjac!(view(pJ, :, 1:s.n_params), z, θ, t)
        return s.jac!(view(pJ, :, (s.n_params + 1):size(pJ, 2)), z, θ, t)  # ∂f/∂z0 = ∂f/∂z
    end
end

"""
    forward_sensitivity_solve(d, u0, t0, t1, θ, solver; abstol, reltol, maxiters) -> ODESolution

Solve for w = z - z0 together with S = ∂w/∂[θ; z0] (n × (P + n)).
"""
function forward_sensitivity_solve(
        d::Dynamics, u0::AbstractVector, t0::Real, t1::Real, θ::AbstractVector,
        solver::AbstractString; abstol::Real, reltol::Real, maxiters::Integer
    )
    z0 = collect(Float64, u0)
    s = Shifted(d.f!, d.jac!, d.paramjac!, length(θ))
    fun = ODEFunction{true}(s; jac = shifted_jac(s), paramjac = shifted_paramjac(s))
    # Native: ForwardDiff through the Julia MLP. Python: our Jacobians if given, else FiniteDiff.
    sensealg = is_native(d) ? ForwardSensitivity() : ForwardSensitivity(autodiff = false, autojacvec = false)
    q = vcat(collect(Float64, θ), z0)
    prob = ODEForwardSensitivityProblem(fun, zero(z0), (Float64(t0), Float64(t1)), q; sensealg)
    # finite_difference_algorithm on every route: see its comment (ForwardDiff Jacobians of the
    # augmented right-hand side fail on its Float64 buffers).
    return solve(prob, finite_difference_algorithm(solver); abstol, reltol, maxiters)
end

"""States z = z0 + w at the times `ts` of a `forward_sensitivity_solve`, as an n×K matrix."""
function sensitivity_states_at(sol, ts::AbstractVector, u0::AbstractVector)
    z0 = collect(Float64, u0)
    return reduce(hcat, [z0 .+ extract_local_sensitivities(sol, Float64(t), true)[1] for t in ts])
end

"""
    sensitivity_gradient(sol, ts, G) -> grad_q

`grad_q` = Σ_k S(t_k)ᵀ G[:, k], length P + n, with S = ∂w/∂[θ; z0]. dL/dz0 also needs
Σ_k G[:, k] (the identity part of ∂z/∂z0), which the caller adds (harness/julia/results.py).
"""
function sensitivity_gradient(sol, ts::AbstractVector, G::AbstractMatrix)
    table = collect(Float64, G)
    grad_q = Float64[]
    for (k, t) in enumerate(ts)
        _, S = extract_local_sensitivities(sol, Float64(t), true)
        term = S' * view(table, :, k)
        grad_q = isempty(grad_q) ? term : grad_q .+ term
    end
    return collect(Float64, grad_q)
end

end # module HarnessJL
