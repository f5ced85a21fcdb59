#!/usr/bin/env escript
%% recfleet benchmark peer: Erlang distribution on loopback.
%%
%% Starts a second BEAM node (erl -sname, epmd starts by itself) running an
%% echo process, makes this escript a distributed node too, then times
%% round trips of a Size-byte binary between the two nodes:
%%   - N sequential round trips (after a warm-up), each timed with
%%     erlang:monotonic_time, for p50/p99;
%%   - Conc client processes doing round trips for DurMs, for messages/s.
%% Prints one line of JSON. Usage: erl_rtt.escript N Size Conc DurMs

main([NS, SizeS, ConcS, DurS]) ->
    N = list_to_integer(NS),
    Size = list_to_integer(SizeS),
    Conc = list_to_integer(ConcS),
    DurMs = list_to_integer(DurS),
    %% The first attempts to go distributed fail until epmd is up: quietly.
    logger:set_primary_config(level, emergency),
    Id = os:getpid(),
    Cookie = "rfbench" ++ Id,
    EchoName = "rfbench_echo_" ++ Id,
    Erl = os:find_executable("erl"),
    Eval = "register(echo, self()), "
           "L = fun Loop() -> receive {P, M} -> P ! {echo, M}, Loop(); "
           "stop -> erlang:halt() end end, L().",
    Port = open_port({spawn_executable, Erl},
                     [{args, ["-sname", EchoName, "-setcookie", Cookie,
                              "-noshell", "-noinput", "-eval", Eval]},
                      exit_status, stderr_to_stdout]),
    ok = start_dist("rfbench_client_" ++ Id, 100),
    erlang:set_cookie(node(), list_to_atom(Cookie)),
    {ok, Host} = inet:gethostname(),
    EchoNode = list_to_atom(EchoName ++ "@" ++ Host),
    ok = wait_echo(EchoNode, 200),
    Echo = {echo, EchoNode},
    Bin = list_to_binary(lists:duplicate(Size, $x)),
    [rt(Echo, Bin) || _ <- lists:seq(1, 500)],
    Samples = [timed(Echo, Bin) || _ <- lists:seq(1, N)],
    Sorted = lists:sort(Samples),
    P50 = pct(Sorted, 50),
    P99 = pct(Sorted, 99),
    Self = self(),
    Deadline = erlang:monotonic_time(millisecond) + DurMs,
    T0 = erlang:monotonic_time(microsecond),
    [spawn_link(fun() -> Self ! {done, loop(Echo, Bin, Deadline, 0)} end)
     || _ <- lists:seq(1, Conc)],
    Total = lists:sum([receive {done, C} -> C end || _ <- lists:seq(1, Conc)]),
    Elapsed = (erlang:monotonic_time(microsecond) - T0) / 1.0e6,
    Echo ! stop,
    catch port_close(Port),
    io:format("{\"n\":~b,\"p50_us\":~.3f,\"p99_us\":~.3f,\"msgs_per_s\":~.1f,"
              "\"otp_release\":\"~s\",\"conc\":~b}~n",
              [N, P50, P99, Total / Elapsed, erlang:system_info(otp_release), Conc]);
main(_) ->
    io:format(standard_error, "usage: erl_rtt.escript N Size Conc DurMs~n", []),
    halt(2).

start_dist(_Name, 0) -> {error, no_distribution};
start_dist(Name, Tries) ->
    case net_kernel:start([list_to_atom(Name), shortnames]) of
        {ok, _} -> ok;
        {error, _} -> timer:sleep(50), start_dist(Name, Tries - 1)
    end.

wait_echo(_Node, 0) -> {error, echo_node_not_up};
wait_echo(Node, Tries) ->
    case net_adm:ping(Node) of
        pong ->
            case rpc:call(Node, erlang, whereis, [echo]) of
                P when is_pid(P) -> ok;
                _ -> timer:sleep(50), wait_echo(Node, Tries - 1)
            end;
        pang -> timer:sleep(50), wait_echo(Node, Tries - 1)
    end.

rt(Echo, Bin) ->
    Echo ! {self(), Bin},
    receive {echo, _} -> ok end.

timed(Echo, Bin) ->
    T = erlang:monotonic_time(nanosecond),
    rt(Echo, Bin),
    (erlang:monotonic_time(nanosecond) - T) / 1000.0.

loop(Echo, Bin, Deadline, Count) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true -> Count;
        false -> rt(Echo, Bin), loop(Echo, Bin, Deadline, Count + 1)
    end.

pct(Sorted, P) ->
    Len = length(Sorted),
    I = max(1, min(Len, ceil(P / 100 * Len))),
    lists:nth(I, Sorted).
