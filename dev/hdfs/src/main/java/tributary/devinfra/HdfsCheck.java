package tributary.devinfra;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.FsServerDefaults;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.DistributedFileSystem;
import org.apache.hadoop.hdfs.protocol.DatanodeInfo;

/**
 * Smoke test against a running HDFS through the Hadoop FileSystem API.
 *
 * <p>{@code HdfsCheck URI} writes, lists, reads back and renames a file under /_hdfscheck,
 * plus a file spanning more than one block, then prints what the NameNode reports for the
 * DataNodes (the address non-Java clients such as hdfs-native connect to), and deletes
 * /_hdfscheck again. Exits non-zero on any mismatch.
 */
public final class HdfsCheck {
  private HdfsCheck() {}

  public static void main(String[] args) throws Exception {
    URI uri = URI.create(args.length > 0 ? args[0] : "hdfs://localhost:9000");
    Configuration conf = new Configuration();
    try (FileSystem fs = FileSystem.newInstance(uri, conf)) {
      Path dir = new Path("/_hdfscheck");
      fs.delete(dir, true);
      fs.mkdirs(dir);
      // Use the server's defaults (as hdfs-native does), not this JVM's client defaults.
      FsServerDefaults defaults = fs.getServerDefaults(dir);
      short replication = defaults.getReplication();
      long blockSize = defaults.getBlockSize();
      System.out.println("HdfsCheck: server defaults replication=" + replication
          + " blocksize=" + blockSize);

      byte[] small = ("hello from HdfsCheck " + System.nanoTime() + "\n")
          .getBytes(StandardCharsets.UTF_8);
      Path a = new Path(dir, "small.txt");
      write(fs, a, small, replication, blockSize);
      Path b = new Path(dir, "small-renamed.txt");
      check(fs.rename(a, b), "rename " + a + " -> " + b);
      check(!fs.exists(a) && fs.exists(b), "rename visible");
      check(Arrays.equals(read(fs, b), small), "read back small file");

      byte[] big = new byte[(int) Math.min(blockSize + blockSize / 2, 64L * 1024 * 1024)];
      for (int i = 0; i < big.length; i++) {
        big[i] = (byte) (i * 31 + (i >>> 13));
      }
      Path c = new Path(dir, "multi-block.bin");
      write(fs, c, big, replication, blockSize);
      int bigBlocks = fs.getFileBlockLocations(c, 0, big.length).length;
      check(bigBlocks == (big.length + blockSize - 1) / blockSize, "multi-block file has "
          + bigBlocks + " blocks");
      check(Arrays.equals(read(fs, c), big), "read back multi-block file");

      for (FileStatus st : fs.listStatus(dir)) {
        System.out.println("HdfsCheck: " + st.getPath() + " len=" + st.getLen()
            + " repl=" + st.getReplication() + " blocksize=" + st.getBlockSize()
            + " blocks=" + fs.getFileBlockLocations(st, 0, st.getLen()).length);
      }
      check(fs.listStatus(dir).length == 2, "listing has 2 entries");

      if (fs instanceof DistributedFileSystem) {
        for (DatanodeInfo dn : ((DistributedFileSystem) fs).getDataNodeStats()) {
          System.out.println("HdfsCheck: datanode ipAddr=" + dn.getIpAddr()
              + " hostName=" + dn.getHostName() + " xferPort=" + dn.getXferPort()
              + " state=" + dn.getAdminState());
        }
      }
      check(fs.delete(dir, true), "delete " + dir);
      System.out.println("HdfsCheck: OK (" + uri + ")");
    }
  }

  private static void write(FileSystem fs, Path p, byte[] data, short replication,
      long blockSize) throws Exception {
    try (FSDataOutputStream out = fs.create(p, true, 65536, replication, blockSize)) {
      out.write(data);
    }
  }

  private static byte[] read(FileSystem fs, Path p) throws Exception {
    ByteArrayOutputStream buf = new ByteArrayOutputStream();
    try (InputStream in = fs.open(p)) {
      in.transferTo(buf);
    }
    return buf.toByteArray();
  }

  private static void check(boolean ok, String what) {
    if (!ok) {
      System.err.println("HdfsCheck: FAILED: " + what);
      System.exit(1);
    }
  }
}
