// Descriptor tables, every file_entry variant, and the images that carry raw payloads after entries
// (pipes-data, tcp-stream, sk-queues), decoded by crit 3.17.
using System.Buffers.Binary;
using System.Text.Json;
using Crest.Images.Protos;
using Google.Protobuf;

namespace Crest.Images.Tests.Schemas;

public sealed class FileImagesDecodeWithCritTests : IClassFixture<ScratchDirectory>
{
    private const uint ORdwr = 0x2, OCloexec = 0x80000, ONonblock = 0x800;

    private readonly ScratchDirectory _scratch;

    public FileImagesDecodeWithCritTests(ScratchDirectory scratch) => _scratch = scratch;

    private static FownEntry NoOwner() => new() { Uid = 0, Euid = 0, Signum = 0, PidType = 0, Pid = 0 };

    private static SkOptsEntry SocketOptions() => new()
    {
        SoSndbuf = 212992, SoRcvbuf = 212992, SoSndTmoSec = 0, SoSndTmoUsec = 0, SoRcvTmoSec = 0, SoRcvTmoUsec = 0,
    };

    // sockaddr words as the kernel stores them: network byte order, read as a host (little-endian) u32.
    private static uint Ipv4Word(byte a, byte b, byte c, byte d) => BinaryPrimitives.ReadUInt32LittleEndian([a, b, c, d]);

    private static uint Dev(uint major, uint minor) => major << 20 | minor;

    [Fact]
    public void FdinfoDecodes()
    {
        FdinfoEntry[] fds =
        [
            new() { Id = 1, Flags = 0, Type = FdTypes.Tty, Fd = 0 },
            new() { Id = 2, Flags = 0, Type = FdTypes.Reg, Fd = 1 },
            new() { Id = 3, Flags = 1, Type = FdTypes.Pipe, Fd = 3 },
        ];
        JsonElement entries = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Fdinfo, fds);
        Assert.Equal("TTY", entries[0].GetProperty("type").GetString());
        Assert.Equal("PIPE", entries[2].GetProperty("type").GetString());
        Assert.Equal(3, entries[2].GetProperty("fd").GetInt32());
    }

    [Fact]
    public void EveryKindOfFileEntryDecodes()
    {
        var unixName = ByteString.CopyFromUtf8("/tmp/crest.sock");
        var inet = new InetSkEntry
        {
            Id = 6, Ino = 81234, Family = 2, Type = 1, Proto = 6, State = 10, SrcPort = 8080, DstPort = 0,
            Flags = ONonblock, Backlog = 128, Fown = NoOwner(), Opts = SocketOptions(),
        };
        inet.SrcAddr.Add(Ipv4Word(127, 0, 0, 1));
        inet.DstAddr.Add(0u);
        var epoll = new EventpollFileEntry { Id = 8, Flags = OCloexec, Fown = NoOwner() };
        epoll.Tfd.Add(new EventpollTfdEntry { Id = 8, Tfd = 5, Events = 0x1, Data = 0xdeadbeef });
        var fh = new FhEntry { Bytes = 8, Type = 1 };
        fh.Handle.Add([0x1234UL, 0UL]);
        var inotify = new InotifyFileEntry { Id = 12, Flags = ONonblock, Fown = NoOwner() };
        inotify.Wd.Add(new InotifyWdEntry { Id = 12, IIno = 131073, Mask = 0x2, IgnoredMask = 0, SDev = Dev(8, 1), Wd = 1, FHandle = fh });
        var fanotify = new FanotifyFileEntry { Id = 13, Flags = 0, Fown = NoOwner(), Faflags = 0, Evflags = 0 };
        fanotify.Mark.Add(new FanotifyMarkEntry
        {
            Id = 13, Type = MarkType.Inode, Mflags = 0, Mask = 0x8, IgnoredMask = 0, SDev = Dev(8, 1),
            Ie = new FanotifyInodeMarkEntry { IIno = 131073, FHandle = fh },
        });

        FileEntry[] files =
        [
            new() { Type = FdTypes.Reg, Id = 2, Reg = new RegFileEntry { Id = 2, Flags = ORdwr | OCloexec, Pos = 4096, Fown = NoOwner(), Name = "/var/log/app.log", MntId = 25, Size = 8192, Mode = 0x81a4, BuildId = { 0xdeadbeef, 0x01020304 }, CrestDev = Dev(8, 1), CrestIno = 131073, CrestMtimeNs = 1_700_000_000_123_456_789 } },
            new() { Type = FdTypes.Pipe, Id = 3, Pipe = new PipeEntry { Id = 3, PipeId = 51234, Flags = 0, Fown = NoOwner() } },
            new() { Type = FdTypes.Fifo, Id = 4, Fifo = new FifoEntry { Id = 4, PipeId = 51240, RegfId = 14 } },
            new() { Type = FdTypes.Unixsk, Id = 5, Usk = new UnixSkEntry { Id = 5, Ino = 81230, Type = 1, State = 10, Flags = 0, Uflags = 0, Backlog = 5, Peer = 0, Fown = NoOwner(), Opts = SocketOptions(), Name = unixName } },
            new() { Type = FdTypes.Inetsk, Id = 6, Isk = inet },
            new() { Type = FdTypes.Eventfd, Id = 7, Efd = new EventfdFileEntry { Id = 7, Flags = OCloexec, Fown = NoOwner(), Counter = 42 } },
            new() { Type = FdTypes.Eventpoll, Id = 8, Epfd = epoll },
            new() { Type = FdTypes.Signalfd, Id = 9, Sgfd = new SignalfdEntry { Id = 9, Flags = ONonblock, Fown = NoOwner(), Sigmask = 1UL << 16 } },
            new() { Type = FdTypes.Timerfd, Id = 10, Tfd = new TimerfdEntry { Id = 10, Flags = 0, Fown = NoOwner(), Clockid = 1, Ticks = 3, SettimeFlags = 0, Vsec = 0, Vnsec = 500_000_000, Isec = 1, Insec = 0 } },
            new() { Type = FdTypes.Inotify, Id = 12, Ify = inotify },
            new() { Type = FdTypes.Fanotify, Id = 13, Ffy = fanotify },
            new() { Type = FdTypes.Tty, Id = 1, Tty = new TtyFileEntry { Id = 1, TtyInfoId = 1, Flags = ORdwr, Fown = NoOwner() } },
        ];

        JsonElement entries = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.Files, files);
        Assert.Equal(files.Length, entries.GetArrayLength());
        string[] types = [.. entries.EnumerateArray().Select(e => e.GetProperty("type").GetString()!)];
        Assert.Equal(["REG", "PIPE", "FIFO", "UNIXSK", "INETSK", "EVENTFD", "EVENTPOLL", "SIGNALFD", "TIMERFD", "INOTIFY", "FANOTIFY", "TTY"], types);

        JsonElement reg = entries[0].GetProperty("reg");
        Assert.Equal("/var/log/app.log", reg.GetProperty("name").GetString());
        Assert.Equal("O_RDWR | O_CLOEXEC", reg.GetProperty("flags").GetString());
        Assert.Equal(0xdeadbeefL, reg.GetProperty("build_id")[0].GetInt64());
        Assert.False(reg.TryGetProperty("crest_ino", out _)); // Crest's extension fields 1000-1002: skipped by crit
        Assert.Equal("/tmp/crest.sock", entries[3].GetProperty("usk").GetProperty("name").GetString());
        Assert.Equal("LISTEN", entries[3].GetProperty("usk").GetProperty("state").GetString());

        JsonElement isk = entries[4].GetProperty("isk");
        Assert.Equal("INET", isk.GetProperty("family").GetString());
        Assert.Equal("STREAM", isk.GetProperty("type").GetString());
        Assert.Equal("TCP", isk.GetProperty("proto").GetString());
        Assert.Equal("127.0.0.1", isk.GetProperty("src_addr")[0].GetString());
        Assert.Equal(8080, isk.GetProperty("src_port").GetInt32());

        Assert.Equal(42, entries[5].GetProperty("efd").GetProperty("counter").GetInt32());
        Assert.Equal(0xdeadbeef, entries[6].GetProperty("epfd").GetProperty("tfd")[0].GetProperty("data").GetUInt32());
        Assert.Equal("0x10000", entries[7].GetProperty("sgfd").GetProperty("sigmask").GetString());
        Assert.Equal(500_000_000, entries[8].GetProperty("tfd").GetProperty("vnsec").GetInt32());
        Assert.Equal("8:1", entries[9].GetProperty("ify").GetProperty("wd")[0].GetProperty("s_dev").GetString());
        Assert.Equal("INODE", entries[10].GetProperty("ffy").GetProperty("mark")[0].GetProperty("type").GetString());
        Assert.Equal(1, entries[11].GetProperty("tty").GetProperty("tty_info_id").GetInt32());
    }

    [Fact]
    public void PipeDataIsFollowedByItsBytes()
    {
        byte[] first = "hello"u8.ToArray();
        byte[] second = [0, 1, 2];
        (IMessage, byte[]?)[] written =
        [
            (new PipeDataEntry { PipeId = 51234, Bytes = (uint)first.Length, Size = 65536 }, first),
            (new PipeDataEntry { PipeId = 51240, Bytes = (uint)second.Length }, second),
        ];
        foreach (ImageKind kind in new[] { ImageKinds.PipesData, ImageKinds.FifoData })
        {
            JsonElement entries = CritDecoding.DecodeEntries(_scratch, kind, pretty: true, written);
            Assert.Equal(2, entries.GetArrayLength());
            Assert.Equal(51234, entries[0].GetProperty("pipe_id").GetInt32());
            Assert.Equal(first, Convert.FromBase64String(entries[0].GetProperty("extra").GetString()!));
            Assert.Equal(second, Convert.FromBase64String(entries[1].GetProperty("extra").GetString()!));
        }
    }

    [Fact]
    public void TcpStreamIsFollowedByBothQueues()
    {
        byte[] inq = "GET / HTTP/1.1\r\n"u8.ToArray();
        byte[] outq = "HTTP/1.1 200 OK\r\n\r\n"u8.ToArray();
        var stream = new TcpStreamEntry
        {
            InqLen = (uint)inq.Length, InqSeq = 0x1000, OutqLen = (uint)outq.Length, OutqSeq = 0x2000,
            OptMask = 0x7, SndWscale = 7, MssClamp = 65483, RcvWscale = 7, Timestamp = 123456, Nodelay = true,
        };
        JsonElement entry = CritDecoding.DecodeEntries(_scratch, ImageKinds.TcpStream, pretty: true, [(stream, [.. inq, .. outq])], id: 0x13d52)[0];
        Assert.Equal("0x7", entry.GetProperty("opt_mask").GetString());
        Assert.Equal(inq, Convert.FromBase64String(entry.GetProperty("extra").GetProperty("inq").GetString()!));
        Assert.Equal(outq, Convert.FromBase64String(entry.GetProperty("extra").GetProperty("outq").GetString()!));
    }

    [Fact]
    public void SocketQueueIsFollowedByItsPacket()
    {
        byte[] packet = "datagram"u8.ToArray();
        JsonElement entry = CritDecoding.DecodeEntries(_scratch, ImageKinds.SkQueues, pretty: false,
            [(new SkPacketEntry { IdFor = 5, Length = (uint)packet.Length }, packet)])[0];
        Assert.Equal(5, entry.GetProperty("id_for").GetInt32());
        Assert.Equal(packet, Convert.FromBase64String(entry.GetProperty("extra").GetString()!));
    }

    [Fact]
    public void LocksAndTerminalsDecode()
    {
        var posixLock = new FileLockEntry { Flag = 1, Type = 1, Pid = 4242, Fd = 3, Start = 0, Len = -1 };
        Assert.Equal(-1, CritDecoding.DecodeAndCompare(_scratch, ImageKinds.FileLocks, posixLock)[0].GetProperty("len").GetInt32());

        var termios = new TermiosEntry { CIflag = 0x500, COflag = 0x5, CCflag = 0xbf, CLflag = 0x8a3b, CLine = 0, CIspeed = 15, COspeed = 15 };
        termios.CCc.Add(Enumerable.Range(0, 19).Select(i => (uint)i));
        var info = new TtyInfoEntry
        {
            Id = 1, Type = TtyType.Pty, Locked = false, Exclusive = false, PacketMode = false, Sid = 4200, Pgrp = 4242,
            Rdev = Dev(136, 3), Termios = termios, Winsize = new WinsizeEntry { WsRow = 24, WsCol = 80, WsXpixel = 0, WsYpixel = 0 },
            Pty = new TtyPtyEntry { Index = 3 },
        };
        JsonElement tty = CritDecoding.DecodeAndCompare(_scratch, ImageKinds.TtyInfo, info)[0];
        Assert.Equal("PTY", tty.GetProperty("type").GetString());
        Assert.Equal(80, tty.GetProperty("winsize").GetProperty("ws_col").GetInt32());
        Assert.Equal(19, tty.GetProperty("termios").GetProperty("c_cc").GetArrayLength());
    }
}
