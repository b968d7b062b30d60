using System.Text;
using Crest.Kernel.Files;
using Crest.Kernel.Sockets;

namespace Crest.Kernel.Tests.Sockets;

public class ScmRightsTests
{
    [Fact]
    public void APipeEndPassedOverASocketpairStillCarriesData()
    {
        var (left, right) = KernelSocket.CreatePair(SocketKind.Stream);
        var (read, write) = FileDescriptor.CreatePipe();
        using (left)
        using (right)
        using (read)
        using (write)
        {
            ScmRights.Send(left, [write.Fd], "w"u8);
            var data = new byte[16];
            ReceivedMessage message = ScmRights.Receive(right, data);
            Assert.Equal(1, message.DataLength);
            Assert.Equal((byte)'w', data[0]);
            Assert.False(message.DataTruncated);
            FileDescriptor received = Assert.Single(message.Descriptors);
            using (received)
            {
                Assert.NotEqual(write.Fd, received.Fd);
                Assert.True(received.CloseOnExec);
                Assert.Equal(write.Stat().Inode, received.Stat().Inode);
                received.WriteAll("sent by the received end"u8);
            }
            var buffer = new byte[24];
            Assert.Equal(24, read.ReadFull(buffer));
            Assert.Equal("sent by the received end", Encoding.ASCII.GetString(buffer));
        }
    }

    [Fact]
    public void SeveralDescriptorsArriveInOrderWithTheirData()
    {
        var (left, right) = KernelSocket.CreatePair(SocketKind.SeqPacket);
        using (left)
        using (right)
        {
            var pipes = Enumerable.Range(0, 3).Select(_ => FileDescriptor.CreatePipe()).ToArray();
            try
            {
                ScmRights.Send(left, pipes.Select(p => p.Read).ToArray(), "three pipes"u8);
                var data = new byte[64];
                ReceivedMessage message = ScmRights.Receive(right, data);
                Assert.Equal("three pipes", Encoding.ASCII.GetString(data, 0, message.DataLength));
                Assert.Equal(3, message.Descriptors.Length);
                for (int i = 0; i < 3; i++)
                {
                    using FileDescriptor got = message.Descriptors[i];
                    Assert.Equal(pipes[i].Read.Stat().Inode, got.Stat().Inode);
                }
            }
            finally
            {
                foreach (var (r, w) in pipes) { r.Dispose(); w.Dispose(); }
            }
        }
    }

    [Fact]
    public void MoreDescriptorsThanExpectedIsAnError()
    {
        var (left, right) = KernelSocket.CreatePair(SocketKind.Datagram);
        var (read, write) = FileDescriptor.CreatePipe();
        using (left)
        using (right)
        using (read)
        using (write)
        {
            // Room for two (the control buffer is rounded up to 8 bytes), three sent.
            ScmRights.Send(left, [read.Fd, write.Fd, read.Fd], "3"u8);
            var e = Assert.Throws<KernelException>(() => ScmRights.Receive(right, new byte[4], maxDescriptors: 2));
            Assert.Equal(Errno.EMSGSIZE, e.Errno.Value);
            Assert.StartsWith("recvmsg(SCM_RIGHTS): EMSGSIZE", e.Message);
        }
    }

    [Fact]
    public void ReceivingFromAClosedPeerReadsNothing()
    {
        var (left, right) = KernelSocket.CreatePair(SocketKind.Stream);
        using (right)
        {
            left.Dispose();
            ReceivedMessage message = ScmRights.Receive(right, new byte[4]);
            Assert.Equal(0, message.DataLength);
            Assert.Empty(message.Descriptors);
        }
    }
}
