// SIGTERM, SIGINT and SIGHUP during dump, pre-dump, restore and migrate: a harness's timeout or a user's Ctrl-C.
// Ending Crest there with the default action would leave a frozen tree (possibly inside an injected syscall, with
// Crest's registers and code) or a half-restored one. While the engine can still roll back, the signal is
// handed to Interruption instead and the engine fails at its next safe point; afterwards the default action applies.
using System.Runtime.InteropServices;
using Crest.Engine;

namespace Crest.Cli.Criu;

internal sealed class StopSignals : IDisposable
{
    private readonly PosixSignalRegistration[] _registrations;

    private StopSignals(PosixSignalRegistration[] registrations) => _registrations = registrations;

    public static StopSignals Register()
    {
        Interruption.Arm();
        return new StopSignals(
        [
            On(PosixSignal.SIGTERM, "SIGTERM"),
            On(PosixSignal.SIGINT, "SIGINT"),
            On(PosixSignal.SIGHUP, "SIGHUP"),
        ]);
    }

    private static PosixSignalRegistration On(PosixSignal signal, string name) =>
        PosixSignalRegistration.Create(signal, context =>
        {
            if (Interruption.Request(name)) context.Cancel = true;
        });

    public void Dispose()
    {
        Interruption.Disarm();
        foreach (var r in _registrations) r.Dispose();
    }
}
