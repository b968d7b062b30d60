// Whether a task's memory cgroup limits what it may charge beyond what Crest's own limits. Page cache a task
// writes is charged to its memory cgroup, so a task made to write its own pages must not be one that a limit
// could push into reclaim or the OOM killer for it. Sources: /proc/PID/cgroup (v2 line "0::/path", Linux 4.5;
// v1 line "N:...memory...:/path"), the hierarchies' mount points from /proc/self/mountinfo, and the limits
// in each cgroup from the task's up to the first one Crest is in as well (limits of common ancestors apply to
// Crest's own writes just the same): v2 memory.max and memory.high, v1 memory.limit_in_bytes. Anything that
// cannot be read counts as limited: the careful way is kept.
using System.Globalization;

namespace Crest.Engine.Memory;

internal static class MemoryCgroup
{
    /// <summary>v1 shows "no limit" as PAGE_COUNTER_MAX pages in bytes (about 2^63); anything this large is none.</summary>
    private const ulong V1Unlimited = 1UL << 62;

    /// <summary>Why task <paramref name="pid"/> could be limited where Crest is not, or null.</summary>
    public static string? LimitNotShared(int pid)
    {
        var task = Paths(pid.ToString(CultureInfo.InvariantCulture));
        var crest = Paths("self");
        if (task is null || crest is null) return $"cannot read /proc/{pid}/cgroup";
        var (v2Mount, v1Mount) = Mounts();
        if (task.Value.V1 is { } v1)
        {
            if (v1Mount is null) return "no mount of the cgroup v1 memory controller";
            string? why = Check(v1Mount, v1, crest.Value.V1 ?? "/", ["memory.limit_in_bytes"]);
            if (why is not null) return why;
        }
        if (task.Value.V2 is { } v2 && v2Mount is not null)
            return Check(v2Mount, v2, crest.Value.V2 ?? "/", ["memory.max", "memory.high"]);
        return null;
    }

    private static string? Check(string mount, string task, string crest, string[] knobs)
    {
        if (task.Contains("/..", StringComparison.Ordinal)) return $"cgroup {task} is outside Crest's cgroup namespace";
        for (string path = task; path.Length > 1; path = Parent(path))
        {
            if (IsAncestorOrSelf(path, crest)) break;
            foreach (string knob in knobs)
            {
                string file = mount + path + "/" + knob;
                string value;
                try
                {
                    if (!File.Exists(file)) continue;
                    value = File.ReadAllText(file).Trim();
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    return $"{file}: {e.Message}";
                }
                if (value == "max") continue;
                if (ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out ulong bytes) && bytes >= V1Unlimited) continue;
                return $"{file} is {value}";
            }
        }
        return null;
    }

    /// <summary>The task's v2 path and v1 memory path from /proc/PID/cgroup, or null when unreadable.</summary>
    private static (string? V2, string? V1)? Paths(string pid)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines($"/proc/{pid}/cgroup");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        string? v2 = null, v1 = null;
        foreach (string line in lines)
        {
            // hierarchy-id:controllers:path; the path may itself hold ':'.
            int first = line.IndexOf(':'), second = first < 0 ? -1 : line.IndexOf(':', first + 1);
            if (second < 0) continue;
            string controllers = line[(first + 1)..second], path = line[(second + 1)..];
            if (line.StartsWith("0::", StringComparison.Ordinal)) v2 = path;
            else if (controllers.Split(',').Contains("memory")) v1 = path;
        }
        return (v2, v1);
    }

    /// <summary>Mount points of the cgroup2 hierarchy and of the v1 hierarchy holding the memory controller.</summary>
    private static (string? V2, string? V1Memory) Mounts()
    {
        string? v2 = null, v1 = null;
        string[] lines;
        try
        {
            lines = File.ReadAllLines("/proc/self/mountinfo");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (null, null);
        }
        foreach (string line in lines)
        {
            // id parent major:minor root mount-point options [optional...] - fstype source super-options
            string[] f = line.Split(' ');
            int dash = Array.IndexOf(f, "-");
            if (dash < 0 || dash + 3 >= f.Length || f.Length < 5 || f[3] != "/") continue;
            string point = f[4].Replace("\\040", " ", StringComparison.Ordinal);
            if (f[dash + 1] == "cgroup2") v2 ??= point;
            else if (f[dash + 1] == "cgroup" && f[dash + 3].Split(',').Contains("memory")) v1 ??= point;
        }
        return (v2, v1);
    }

    private static string Parent(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    private static bool IsAncestorOrSelf(string ancestor, string path) =>
        path == ancestor || path.StartsWith(ancestor + "/", StringComparison.Ordinal);
}
